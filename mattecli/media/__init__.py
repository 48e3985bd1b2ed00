"""Media I/O: sources that yield frames, trimap matching, and sinks that write results."""
