"""A target defined outside vit-edge, to prove a new target is one module per side plus one registry entry."""
