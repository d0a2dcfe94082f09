"""The module's tables in Synapse's database: schema, and the transactions over them."""
