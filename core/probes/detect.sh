# The first of the tools named in "$@" that this container has, printed; exit 127 if none.
for t in "$@"; do
  command -v "$t" >/dev/null 2>&1 && { echo "$t"; exit 0; }
done
exit 127
