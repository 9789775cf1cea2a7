"""The guide's claims and how they are checked: claims, the matrix, scenarios, the watch, the judge."""
