"""cogedit-tui's front ends: the Textual workstation (``tui.app``) and the command line (``tui.cli``)."""
