# terraform init -backend-config=environments/production.backend.hcl (the state bucket is created once, by hand or by an
# account baseline: Terraform cannot keep its own state in a bucket it creates).
key          = "propensity/production/terraform.tfstate"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
