"""The local stack: every part of Interns as processes on this machine, no Docker."""
