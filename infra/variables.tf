variable "environment" {
  description = "staging or production: every name and tag carries it, so both live in one account side by side."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "region" {
  description = "AWS region of every resource (SAGEMAKER_REGION for the deployer)."
  type        = string
  default     = "eu-west-1"
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows may assume the deploy role (OIDC)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "An account holds one GitHub OIDC provider: create it with the first environment, reuse it after."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "The VPC of the online store, the event bus and the endpoint."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (one per availability zone, at least two) for ElastiCache and MSK."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "give at least two private subnets, in different availability zones."
  }
}

variable "client_cidr_blocks" {
  description = "Where the endpoint, the stream job and Dagster reach Redis and Kafka from."
  type        = list(string)
}

variable "redis_node_type" {
  description = "ElastiCache node type of the online store."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_replicas" {
  description = "Read replicas beside the primary: automatic failover needs at least one."
  type        = number
  default     = 1
}

variable "kafka_broker_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.t3.small"
}

variable "kafka_version" {
  description = "Kafka version of the MSK cluster (the broker make services runs locally is 3.9)."
  type        = string
  default     = "3.9.x"
}

variable "kafka_broker_volume_gb" {
  description = "EBS volume per broker."
  type        = number
  default     = 100
}

variable "lake_noncurrent_days" {
  description = "Days an overwritten or deleted lake object's old version is kept (versioning) before it expires."
  type        = number
  default     = 30
}

variable "capture_retention_days" {
  description = "Days SageMaker Data Capture files are kept: the decision log is built from them within a day."
  type        = number
  default     = 90
}

variable "endpoint_name" {
  description = "The SageMaker endpoint the deployer creates (the Dagster endpoint asset's name)."
  type        = string
  default     = "propensity"
}

variable "alarm_email" {
  description = "Where the endpoint alarms are sent (empty: the topic has no subscription)."
  type        = string
  default     = ""
}
