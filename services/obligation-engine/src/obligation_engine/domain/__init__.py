"""The rules, as pure functions over plain data: no Kafka, no HTTP, no clock reads."""
