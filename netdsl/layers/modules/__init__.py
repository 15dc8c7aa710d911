"""The torch code that layer types build beyond torch.nn (basic.py; window.py: Swin and MaxViT attention; functions.py:
the calls of layers whose tensor sits at their own path). Imported only by the builders, so only with torch."""
