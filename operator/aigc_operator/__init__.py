"""The AIGC edge-GPU scheduler operator (kopf) and its local dev cluster helpers."""
