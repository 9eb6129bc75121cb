#!/usr/bin/env bash
# Runs the fault campaign: fault_campaign_test.sh CAMPAIGN TREE RUNS
exec "$1" --program="$2" --runs="$3"
