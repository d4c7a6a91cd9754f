"""The Druid-dialect SQL query service (CONTRACT §7)."""
