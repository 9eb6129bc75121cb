// The `harrow` subcommands; each returns the exit status (failures throw, see errors.h).

#pragma once

#include "programs/harrow/session.h"

namespace harrow::cli {

Co<int> ps(Session& session);
Co<int> call(Session& session);
Co<int> stacks(Session& session);
Co<int> cancel(Session& session);

}  // namespace harrow::cli
