// docs:snippets_test passes when it builds: every C++ snippet of README.md, REFERENCE.md and
// RECIPES.md compiled (the :snippets library it depends on). Nothing to run.
int main() { return 0; }
