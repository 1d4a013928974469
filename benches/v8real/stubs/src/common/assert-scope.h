// wcpt's stand-in: nothing of V8's assert scopes is used by the table.
