# Image registries: the scoring container (the repository's Dockerfile) and the training container of the
# SageMaker pipeline. Tags are immutable: a deployed tag always names the image that was tested.

locals {
  repositories = toset(["serving", "training"])
}

resource "aws_ecr_repository" "image" {
  for_each             = local.repositories
  name                 = "${local.name}-${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.data.arn
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  for_each   = aws_ecr_repository.image
  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last 50 images: enough to roll back across months of releases"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}
