"""Message stores: where history, offline queues, unacknowledged deliveries and tasks live."""
