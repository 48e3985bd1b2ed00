"""Matting networks and the encoders and layers they share."""
