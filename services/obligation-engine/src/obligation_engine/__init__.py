"""obligation-engine: obligations, milestones and SLAs of every contract as live, timed tasks."""
