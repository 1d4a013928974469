// wcpt's stand-in: the code pointer table uses nothing from this header.
