"""`make bench`: each module here measures one area and prints `BENCH <name> <value> <unit>`."""
