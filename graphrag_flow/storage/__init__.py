"""Where outputs and checkpoints live on disk, written so a kill -9 never leaves half a file."""
