"""reco-articles' Pulumi program: GKE with a GPU pool, Memorystore, GCS, Cloud SQL, Pub/Sub, IAM, Argo CD."""
