// wcpt's stand-in: the memory corruption API is not enabled.
