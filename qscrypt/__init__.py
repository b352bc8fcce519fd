"""The shared library every product package uses: settings, logging, the database (embedded server,
migrations), the JSON-RPC client for coin daemons, the task bus and the dev services. It imports
mining only, and none of the product packages (checked by import-linter)."""
