#!/usr/bin/env bash
# Idempotent: install the Debian packages of a one-node SLURM cluster with accounting (slurmctld,
# slurmd, the client commands, munge, slurmdbd and MariaDB), which the SLURM executor's tests
# start on this machine (tests/slurm_cluster.py). Does nothing when every binary is present.
# Needs root (or sudo) and Debian's apt; no daemon is started or enabled here.
set -euo pipefail
missing=()
for binary in sbatch slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$binary" >/dev/null || missing+=("$binary")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install_slurm: missing ${missing[*]}; installing SLURM, munge, slurmdbd and MariaDB" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# Keep existing config files untouched; the tests write their own configs into a temp dir.
$sudo apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurmctld slurmd slurm-client munge slurmdbd mariadb-server
