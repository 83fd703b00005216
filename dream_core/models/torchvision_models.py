"""torchvision architectures (placeholder until implemented)."""
SPECS: list = []
