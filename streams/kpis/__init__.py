"""Pure KPI logic: formulas, sessions, attribution, merging. No Kafka, no I/O, no clock."""
