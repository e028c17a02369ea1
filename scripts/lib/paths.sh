# shellcheck shell=bash
# Sourced by the scripts that work from the repo root (reproduce_paper.sh,
# measure_precision.sh, gpu_session.sh), before they go there.
#
# from_caller SCRIPT VAR...: each VAR that is set and not empty becomes an absolute path, as
# its user meant it: a relative one from the folder the script was called from (not the repo
# root it works in), a leading ~ the home folder (as adamrepro reads $ADAMREPRO_DATA: a
# quoted ~ reaches the script as it is, and realpath made it a folder named ~ there). A value
# of blanks alone is refused in one line naming VAR, exit 2: realpath made it a folder named
# " " in the caller's folder, where adamrepro refuses a blank $ADAMREPRO_DATA.
from_caller() {
    local script=$1 name value user home
    shift
    for name in "$@"; do
        value=${!name:-}
        [ -n "$value" ] || continue
        if [ -z "${value//[[:space:]]/}" ]; then
            echo "$script: $name is blank; unset it, or set it to a folder" >&2
            exit 2
        fi
        # ~ and ~user as Python's expanduser reads them (bash's own tilde expansion: $HOME,
        # or where it is unset the user's home); a ~user of no known user adamrepro refuses,
        # where realpath made it a folder named ~user
        if [ "${value:0:1}" = "~" ]; then
            user=${value%%/*}
            user=${user:1}
            home=""
            if [ -z "$user" ]; then
                home=~
            elif [[ "$user" =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]]; then
                eval "home=~$user"  # a name of these characters alone: nothing else runs
            fi
            if [ -z "$home" ] || [ "$home" = "~$user" ]; then
                echo "$script: $name=$value: no user '$user' whose home ~$user could stand" \
                     "for; write the full path, or ~/$user for a folder in your own home" >&2
                exit 2
            fi
            value=$home${value:${#user}+1}
        fi
        # printf -v keeps the variable's export attribute as it was (set in the environment:
        # exported; set in the script: not)
        printf -v "$name" '%s' "$(realpath -m -- "$value")"
    done
}

# passes_data_dir FLAGS: whether FLAGS (a RUN_FLAGS) passes --data-dir, as a word of its own
# or as --data-dir=DIR, after any blank the shell splits it at. The scripts fetch, and unpack
# a bundle, into $ADAMREPRO_DATA: a --data-dir reached `run` alone, which then read another
# folder than the one filled.
passes_data_dir() {
    local pattern='(^|[[:space:]])--data-dir(=|[[:space:]]|$)'
    [[ "$1" =~ $pattern ]]
}
