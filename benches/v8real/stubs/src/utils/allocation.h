// wcpt's stand-in: GetPlatformVirtualAddressSpace is declared with the
// address spaces.
#include "src/base/emulated-virtual-address-subspace.h"
