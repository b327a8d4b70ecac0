# The access audit's probe (POSIX sh: dash, busybox ash), run as: sh -c "$(access.sh)" sh NAME MCP LIMIT PATH...
# NAME is the probe file's name, MCP the baked MCP config file, LIMIT how many of its bytes to print.
# It writes nothing it does not remove, and checks that what it wrote is gone. One line per fact:
#   U<TAB>uid                     H<TAB>set|<TAB>HOME      C<TAB>CapBnd (hex)<TAB>NoNewPrivs
#   P<TAB>path<TAB>read|noread<TAB>write|nowrite|clash<TAB>clean|left<TAB>error   (a directory)
#   F<TAB>path<TAB>read|noread<TAB>write|nowrite                              (a file; never written)
#   A<TAB>path                                                                 (absent)
# then the MCP config between M-BEGIN and M-OK (read) or M-END.
name=$1; mcp=$2; limit=$3; shift 3
printf 'U\t%s\n' "$(id -u 2>/dev/null)"
printf 'H\t%s\t%s\n' "${HOME+set}" "${HOME-}"
bnd=; nnp=
while IFS=: read -r key value; do
  case $key in CapBnd) bnd=$value ;; NoNewPrivs) nnp=$value ;; esac
done < /proc/self/status
printf 'C\t%s\t%s\n' $bnd $nnp
for p in "$@"; do
  if [ -d "$p" ]; then
    if ls "$p" >/dev/null 2>&1; then r=read; else r=noread; fi
    case $p in */) f=$p$name ;; *) f=$p/$name ;; esac
    if [ -e "$f" ] || [ -L "$f" ]; then printf 'P\t%s\t%s\tclash\t\t\n' "$p" "$r"; continue; fi
    if err=$(touch "$f" 2>&1); then
      rm -f "$f" 2>/dev/null
      if [ -e "$f" ] || [ -L "$f" ]; then c=left; else c=clean; fi
      printf 'P\t%s\t%s\twrite\t%s\t\n' "$p" "$r" "$c"
    else
      printf 'P\t%s\t%s\tnowrite\t\t%s\n' "$p" "$r" "$(printf '%s' "$err" | tr '\t\n' '  ')"
    fi
  elif [ -e "$p" ]; then
    if cat "$p" >/dev/null 2>&1; then r=read; else r=noread; fi
    if [ -w "$p" ]; then w=write; else w=nowrite; fi
    printf 'F\t%s\t%s\t%s\n' "$p" "$r" "$w"
  else
    printf 'A\t%s\n' "$p"
  fi
done
printf 'M-BEGIN\n'
head -c "$limit" "$mcp" 2>/dev/null && printf '\nM-OK\n'
printf 'M-END\n'
