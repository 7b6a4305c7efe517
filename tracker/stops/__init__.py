"""Stop and search: the records, their body-worn video review, and the assurance figures."""
