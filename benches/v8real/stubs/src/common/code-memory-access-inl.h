// wcpt's stand-in: everything is in code-memory-access.h.
#include "src/common/code-memory-access.h"
