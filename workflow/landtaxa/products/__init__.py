"""What the workflow hands to its users: maps and their styles, figures, tables, the evolution of
the kinds over the dates, the analysis of the taxonomy and the offline viewer."""
