"""Tree -> IR: groups, repeats and blocks expanded into nodes with every shape inferred (graph/build.py), the budgets
checked on the result (budgets.py), the accepted input sizes (input_sizes.py), and load(), the whole front end in one
call (load.py). Torch-free."""
