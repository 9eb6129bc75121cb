#include <harrow/co/log_level.h>

namespace harrow {
namespace {
bool debugOn = false;  // set once at startup, from the flag or the environment
}  // namespace

bool debugLogging() { return debugOn; }
void setDebugLogging(bool on) { debugOn = on; }

}  // namespace harrow
