"""A helper module the migrations import, as 1.x projects do."""
TITLES = ['Physics', 'Biology', 'Chemistry']
