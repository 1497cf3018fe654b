"""The workstation's screens, one module each: main (queue), new edit, history, and a confirmation."""
