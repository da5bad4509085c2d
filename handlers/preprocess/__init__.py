"""The batch preprocessing Lambda: objects landing under ``raw/`` become clean records in the processed
bucket; bad records go to ``quarantine/`` with their reason."""
