# GitHub Actions reach AWS through OIDC: no long-lived keys. Three roles per environment, each trusting one GitHub
# environment of this repository only (production's environment requires an approval):
# - deploy (environment "<env>"): images to ECR, the SageMaker pipeline, the endpoint and its canary alarms, and
#   `feast apply` of the feature repository's registry;
# - infra (environment "<env>"): terraform apply of this configuration;
# - plan (environment "<env>-plan", no approval): read-only, for terraform plan and feast plan on pull requests.
# The first apply, which creates these roles, is run once by an administrator.

locals {
  github_oidc_url = "https://token.actions.githubusercontent.com"
  github_oidc_arn = (
    var.create_github_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/token.actions.githubusercontent.com"
  )
  sagemaker_arn = "arn:${local.partition}:sagemaker:${var.region}:${local.account_id}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count           = var.create_github_oidc_provider ? 1 : 0
  url             = local.github_oidc_url
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1"] # IAM no longer checks it for GitHub; the API still asks
}

data "aws_iam_policy_document" "github_trust" {
  for_each = { deploy = var.environment, infra = var.environment, plan = "${var.environment}-plan" }

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${each.value}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = "${local.name}-github-deploy"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["deploy"].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "deploy" {
  source_policy_documents = [data.aws_iam_policy_document.image_pull_and_data_key.json]

  statement {
    sid = "PushImages"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:DescribeImages",
    ]
    resources = [for repository in aws_ecr_repository.image : repository.arn]
  }

  statement {
    sid = "Pipeline"
    actions = [
      "sagemaker:CreatePipeline", "sagemaker:UpdatePipeline", "sagemaker:DescribePipeline",
      "sagemaker:StartPipelineExecution", "sagemaker:DescribePipelineExecution",
      "sagemaker:ListPipelineExecutionSteps", "sagemaker:AddTags",
    ]
    resources = ["${local.sagemaker_arn}:pipeline/${local.name}-*"]
  }

  statement {
    sid = "ModelRegistry"
    actions = [
      "sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:DescribeModelPackageGroup",
    ]
    resources = [
      aws_sagemaker_model_package_group.propensity.arn,
      "${local.sagemaker_arn}:model-package/${aws_sagemaker_model_package_group.propensity.model_package_group_name}/*",
    ]
  }

  statement {
    sid = "Endpoint"
    actions = [
      "sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:CreateEndpointConfig",
      "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
      "sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:AddTags",
    ]
    resources = [
      "${local.sagemaker_arn}:model/${var.endpoint_name}-*",
      "${local.sagemaker_arn}:endpoint-config/${var.endpoint_name}-*",
      "${local.sagemaker_arn}:endpoint/${var.endpoint_name}",
    ]
  }

  statement {
    sid       = "PassExecutionRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker_execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid       = "CanaryAlarms" # the deployer puts one pair of alarms per new variant (serving/control/sagemaker.py)
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"]
    resources = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:propensity-${var.endpoint_name}-*"]
  }

  statement {
    sid       = "CanaryMetrics" # reading metrics has no resource-level permission
    actions   = ["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData"]
    resources = ["*"]
  }

  statement {
    sid       = "Artifacts"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/propensity/*"]
  }

  statement {
    sid       = "ArtifactsList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
  }

}

resource "aws_iam_role_policy" "deploy" {
  name   = "propensity-deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}

# Apart, so that the one check it needs skipped is skipped for this statement only.
data "aws_iam_policy_document" "deploy_list_packages" {
  #checkov:skip=CKV_AWS_356:ListModelPackages authorizes on "*" only (the service authorization reference lists no resource type for it); the release reads the group's newest package with it.
  statement {
    sid       = "ModelRegistryList"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "deploy_list_packages" {
  name   = "propensity-deploy-list-packages"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy_list_packages.json
}

resource "aws_iam_role" "plan" {
  name                 = "${local.name}-github-plan"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["plan"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "plan_read_only" {
  role       = aws_iam_role.plan.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

# `feast plan` (the feature-store workflow) reads the registry, which the data key encrypts (ReadOnlyAccess cannot
# decrypt). The deploy role, which applies it, reads and writes it through its Artifacts statement.
data "aws_iam_policy_document" "plan_feature_registry" {
  statement {
    sid       = "ReadFeatureRegistry"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.registry_path}"]
  }

  statement {
    sid       = "DecryptWithDataKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "plan_feature_registry" {
  name   = "propensity-plan-feature-registry"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan_feature_registry.json
}

resource "aws_iam_role" "infra" {
  name                 = "${local.name}-github-infra"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["infra"].json
  max_session_duration = 3600
}

# Every service this configuration manages, without IAM's own administration (PowerUserAccess) ...
resource "aws_iam_role_policy_attachment" "infra_power_user" {
  role       = aws_iam_role.infra.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/PowerUserAccess"
}

# ... plus IAM for the project's own roles and the GitHub OIDC provider only.
data "aws_iam_policy_document" "infra_iam" {
  statement {
    sid = "ProjectRoles"
    actions = [
      "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:TagRole", "iam:UntagRole",
      "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy",
      "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
      "iam:ListInstanceProfilesForRole", "iam:PassRole",
    ]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/propensity-*"]
  }

  statement {
    sid = "GithubOidcProvider"
    actions = [
      "iam:CreateOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider", "iam:GetOpenIDConnectProvider",
      "iam:UpdateOpenIDConnectProviderThumbprint", "iam:TagOpenIDConnectProvider",
    ]
    resources = ["arn:${local.partition}:iam::${local.account_id}:oidc-provider/token.actions.githubusercontent.com"]
  }
}

resource "aws_iam_role_policy" "infra_iam" {
  name   = "propensity-iam"
  role   = aws_iam_role.infra.id
  policy = data.aws_iam_policy_document.infra_iam.json
}
