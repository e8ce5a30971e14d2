"""The report: the book's generated pages (summary, performance) and the in-browser figure check."""
