"""Private helpers shared by the package: version shims, input checks, model files and checkpoints."""
