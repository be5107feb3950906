from gpufleet.artifacts.http.store import HttpStore, deploy_url

__all__ = ["HttpStore", "deploy_url"]
