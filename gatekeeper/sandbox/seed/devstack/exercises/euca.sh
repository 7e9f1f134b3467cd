#!/usr/bin/env bash
# The EC2 API: gone from this stand-in, so it fails (the gate skips it,
# as devstack-gate did, through SKIP_EXERCISES).
echo "euca: no EC2 endpoint"
exit 1
