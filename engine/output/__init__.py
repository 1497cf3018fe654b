"""The output writers: atomic files and folders, H.264 MP4s, the contact sheet."""
