module github.com/joeyrt/joey

go 1.26.8
