"""``mlctl local``: the platform's loop over the emulated cloud (:mod:`emulator`): start and stop it,
keep its state, and run data -> train -> register -> deploy -> predict -> drift check once."""
