"""The control plane: deploying models to endpoints and rolling them out as canaries, on the local endpoint runtime
(`endpoint`) or on SageMaker (`sagemaker`), with one interface (`deployment.Deployer`). It may use boto3 and the data
plane (`serving.*`), never Dagster; the scoring process never imports it."""
