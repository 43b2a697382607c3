"""Everything airq says to Kafka itself: topic names and creation, the broker wait, and the Faust internals it uses."""
