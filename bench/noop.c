/* A do-nothing program for spawn_bench's fork/exec baseline (linked statically: no loader). */
int main(void) { return 0; }
