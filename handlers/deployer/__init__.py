"""The deployer Lambda: an approved model version becomes the endpoint's new config, rolled out
blue/green and verified (docs/deployments.md). ``settings`` and ``plan`` are pure, so ``mlctl`` and
local mode build the same requests."""
