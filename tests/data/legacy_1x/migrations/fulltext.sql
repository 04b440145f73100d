ALTER TABLE books ADD COLUMN fulltext tsvector;
CREATE INDEX books_fulltext_idx ON books USING gin (fulltext);
