"""Domain logic shared by every package: the event contract, source adapters, feature definitions."""
