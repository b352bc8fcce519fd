"""PostgreSQL: the embedded development server and schema migrations."""
