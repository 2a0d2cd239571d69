"""The SageMaker-contract inference server, scorer, local endpoint runtime and client (serving issue)."""
