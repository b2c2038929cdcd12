"""``python -m ottsliced`` runs the command-line interface."""

from ottsliced.cli import main

raise SystemExit(main())
